def greet(name):
    # Fix me: the greeting should end with an exclamation mark.
    return "Hello, " + name


if __name__ == "__main__":
    name = input("What is your name? ")
    print(greet(name))
