"""cocoon.chain"""
