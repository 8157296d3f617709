from mnist_edge.cli import main

main()
