"""speclm.evals"""
