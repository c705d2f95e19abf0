// Test cases for errors (see test/lib/harness.ts); registered on import by test/suite/index.ts.
