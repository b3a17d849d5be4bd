"""The members' web portal: server-rendered pages under /portal/."""
