"""The assembled gateway: builds every part from a config, dispatches requests, runs start-up, reload and shutdown."""
