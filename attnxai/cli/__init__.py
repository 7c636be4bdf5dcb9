"""The `attnxai` command line (`attnxai.cli.main:main`)."""
