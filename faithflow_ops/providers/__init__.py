"""The only code that talks to the outside world (DESIGN §1): one module per provider."""


class SignatureError(Exception):
    """A webhook delivery is not proven to come from its provider; `str(exc)` says why."""
