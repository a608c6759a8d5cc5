"""What `nvr run` is made of: the daemon, the service that assembles the recorder, and the
watchdog, systemd notifications, metrics, alerts and task supervision around it."""
