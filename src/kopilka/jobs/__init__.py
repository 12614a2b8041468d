"""Long work run in the background, with its progress kept where every worker can read it."""
