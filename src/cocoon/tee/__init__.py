"""cocoon.tee"""
