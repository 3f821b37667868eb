"""`python -m bench` entry point."""

from bench.runner import main

if __name__ == "__main__":
    main()
