"""The nipype-brainrecon BIDS App (command line and run configuration)."""
