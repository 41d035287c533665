from twinbase.cli import main

main()
