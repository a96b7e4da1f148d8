"""Who is asking: the operator's token and wallet sessions (access.py), sign-in with a
wallet (sign_in.py), wallets' signatures over challenges (wallet_proofs.py) and agents'
Ed25519 signatures (signatures.py); and who answers: the collector's own signing key
(collector_key.py). Imports the leaves, store/ and web/."""
