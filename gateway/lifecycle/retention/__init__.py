"""Retention (issue #9): what Sluis keeps, for how long, and the job that removes the rest.

`policy` holds a tenant's retention policy (days per rule, defaults from the settings,
never above what the platforms' privacy statements promise); `rules` says what each rule
removes and why it may go; `job` applies them, as the app's scheduled job on one replica
at a time or as `sluis retention run [--dry-run]`.
"""
