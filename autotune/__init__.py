"""compiler.autotune"""
