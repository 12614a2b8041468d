"""Payment providers of the online membership sale (SPEC M-4): ``base`` draws the
interface, ``registry.provider_for`` builds a tenant's adapter (``sandbox``,
``yookassa``, ``stripe``)."""
