"""speclm.finetune"""
