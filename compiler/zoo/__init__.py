"""The model zoo: real CNN architectures with seeded random weights, and models defined in torch."""
