"""cocoon.worker"""
