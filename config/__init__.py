"""newsflow's configuration: defaults (`config.defaults`) and configuration files."""
