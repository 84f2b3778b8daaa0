-- Objects scope 'all': every transaction of the window.
AND 1
