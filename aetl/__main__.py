from aetl.cli import main

main()
