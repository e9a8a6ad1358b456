"""A student into Discord: the code they type in ``/registrar`` (codes), linking the account that
types it and a linked student's rejoin (linking). The bot only carries these over py-cord."""
