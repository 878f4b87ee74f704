"""speclm.ui"""
