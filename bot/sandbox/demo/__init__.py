"""`baton demo`: one scripted ticket through the real serve and worker processes against the sandbox
(the scenario file, the step-by-step driver, and the watcher that reads what the simulators saw)."""
