"""`python -m services.provisioning`: run sync workers until SIGTERM or SIGINT."""

from services.provisioning.worker import main

if __name__ == "__main__":
    main()
