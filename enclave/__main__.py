"""``python -m enclave`` is the ``enclave`` command."""

from ._cli import main

main()
