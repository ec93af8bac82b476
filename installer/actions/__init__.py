"""One module per operator action. The CLI is a thin layer over these; tests call them directly."""
