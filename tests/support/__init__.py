"""What the tests share: the LSP client harness, model builders, reference files, fakes."""
