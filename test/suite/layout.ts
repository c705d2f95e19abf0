// Test cases for layout (see test/lib/harness.ts); registered on import by test/suite/index.ts.
