"""Plain records of the observed world, the closed vocabulary of actions, and the plan."""
