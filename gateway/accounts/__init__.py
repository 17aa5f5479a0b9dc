"""Who may act: accounts, roles, sign-in with a second factor, sessions and API tokens.

`service.Accounts` is the one public face; `policy` says which role may do what;
`principal.Principal` is what every authenticated request carries.
"""
