"""r_keeper's FarCards over HTTP (SPEC P-10): a door in front of the POS gateway.

``protocol`` reads and writes the XML, ``terminals`` says which Kopilka terminal a station
is and what its lookups show, ``service`` maps GetCardInfoEx and TransactionsEx onto
``kopilka.loyalty.pos`` (calculate, commit_check, refund_check) and nothing below it,
``room`` maps the second interface (room charge) onto ``kopilka.hotel.room_charge``,
``messages`` holds what the cashier reads, ``ini`` the ``ExtDllHttp.ini`` a station needs
(the CLI prints it, the settings screen shows it). ``docs/farcards.md`` is the
integrator's guide.
"""
