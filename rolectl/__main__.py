from rolectl.cli import main

main()
