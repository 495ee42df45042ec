"""The five scenarios of `make bench`; each `run(settings)` returns a report Section."""
