from renderer.server import main

main()
