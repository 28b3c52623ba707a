"""The test course's reference package."""
