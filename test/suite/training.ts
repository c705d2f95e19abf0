// Test cases for training (see test/lib/harness.ts); registered on import by test/suite/index.ts.
