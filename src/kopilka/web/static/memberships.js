// The membership screens' few scripts (the pages' policy allows no inline script or style,
// so styles are set through the CSSOM, property by property):
// * the buy button's preview follows the design's fields as they change;
// * "Copy" puts a button's HTML on the clipboard;
// * a box with data-enables unlocks the field it names while it is ticked;
// * what only a page without scripts needs (.js-hidden) is hidden.
(function () {
  "use strict";

  function field(form, name) {
    return form ? form.elements.namedItem(name) : null;
  }

  function px(form, name) {
    var f = field(form, name);
    var n = f ? parseInt(f.value, 10) : NaN;
    return isNaN(n) ? "" : n + "px";
  }

  function colour(form, name) {
    var f = field(form, name);
    return f && /^#[0-9a-fA-F]{6}$/.test(f.value) ? f.value : "";
  }

  function paint(preview) {
    var form = preview.closest("form");
    var s = preview.style;
    var bold = field(form, "bold");
    s.color = colour(form, "text_color");
    s.fontSize = px(form, "text_size");
    s.fontWeight = bold && bold.checked ? "700" : "400";
    s.background = colour(form, "bg_color");
    s.borderStyle = "solid";
    s.borderWidth = px(form, "border_width");
    s.borderColor = colour(form, "border_color");
    s.borderRadius = px(form, "radius");
    s.width = px(form, "width");
    s.height = px(form, "height");
  }

  function copy(button) {
    var area = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentElement.querySelector("[data-copied]");
    function done() {
      if (status) {
        status.textContent = status.getAttribute("data-copied");
      }
    }
    function fallback() {
      area.focus();
      area.select();
      if (document.execCommand("copy")) {
        done();
      }
    }
    if (!area) {
      return;
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(area.value).then(done, fallback);
    } else {
      fallback();
    }
  }

  document.querySelectorAll("[data-button-preview]").forEach(function (preview) {
    var form = preview.closest("form");
    paint(preview);
    if (form) {
      form.addEventListener("input", function () { paint(preview); });
      form.addEventListener("change", function () { paint(preview); });
    }
  });

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { copy(button); });
  });

  document.querySelectorAll("[data-enables]").forEach(function (box) {
    var target = field(box.form, box.getAttribute("data-enables"));
    if (!target) {
      return;
    }
    function sync() {
      target.disabled = !box.checked;
    }
    box.addEventListener("change", sync);
    sync();
  });

  document.querySelectorAll(".js-hidden").forEach(function (element) {
    element.hidden = true;
  });
})();
