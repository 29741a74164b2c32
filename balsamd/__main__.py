from balsamd.cli import main

main()
