"""`python -m service`: the `strava-ingest` command."""

from service.cli import main

if __name__ == "__main__":
    main(prog_name="strava-ingest")
