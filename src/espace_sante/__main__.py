from espace_sante.cli.main import main

main()
