// Test cases for runtime (see test/lib/harness.ts); registered on import by test/suite/index.ts.
