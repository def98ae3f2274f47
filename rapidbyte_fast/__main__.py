"""``python -m rapidbyte_fast`` runs the CLI."""
from .cli import main

main()
