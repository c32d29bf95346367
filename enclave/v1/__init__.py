"""Generated protobuf and gRPC code (by `make proto`; never edit by hand)."""
