"""Identity providers the SSO tests run locally: real protocol implementations over real HTTP."""
