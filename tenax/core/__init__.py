"""The core of tenax: messages, Protocols, errors, goal statuses, budgets and the engine.

It imports nothing else from tenax; every other package builds on it.
"""
