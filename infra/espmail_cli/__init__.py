"""``espmail``: the command line ops and admins use, against a deployed stack or the embedded one."""
