"""Rule-based segments of users and accounts: language, evaluators, membership."""
