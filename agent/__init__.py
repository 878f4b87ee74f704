"""speclm.agent"""
