"""Files other interpreters run (fork server, kernel module, content sync), importing nothing of coursehub."""
