;;; codellama-lsp.el --- Code Llama completion in Emacs through eglot  -*- lexical-binding: t; -*-

;; Usage: load this file (or paste it into your init file) after setting the variables below,
;; e.g. (setq codellama-lsp-model "/path/to/CodeLlama-7b-hf"), then M-x eglot in a buffer of
;; one of `codellama-lsp-modes' (or add `eglot-ensure' to their hooks).  Completions come
;; through `completion-at-point' (C-M-i), and so through corfu or company as well.
;; Works with eglot 1.9+ (Emacs 28 with the elpa package, Emacs 29+ built in).

;;; Code:

(require 'eglot)

(defgroup codellama-lsp nil
  "Code Llama completion through eglot."
  :group 'eglot)

(defcustom codellama-lsp-command "codellama-lsp"
  "The server's program: a name on `exec-path' or an absolute file name."
  :type 'string)

(defcustom codellama-lsp-model "codellama/CodeLlama-7b-hf"
  "The model: a Hugging Face hub id, a local folder, or \"tiny\".
\"tiny\" is the small model shipped with the server, for trying it out."
  :type 'string)

(defcustom codellama-lsp-options nil
  "Other server settings, as a plist of the README's camelCase names.
For example (:device \"cpu\" :maxNewTokens 64 :quantization \"4bit\")."
  :type 'plist)

(defcustom codellama-lsp-modes
  '(python-mode python-ts-mode js-mode js-ts-mode typescript-mode typescript-ts-mode
    c-mode c-ts-mode c++-mode c++-ts-mode rust-mode rust-ts-mode go-mode go-ts-mode
    java-mode java-ts-mode sh-mode bash-ts-mode lua-mode)
  "Major modes whose buffers get Code Llama (read when this file is loaded).
Eglot runs one server per buffer: in these modes Code Llama
replaces the language server eglot would otherwise start."
  :type '(repeat symbol))

(defun codellama-lsp-contact (&optional _interactive)
  "How eglot starts the server: program and initializationOptions."
  `(,codellama-lsp-command
    :initializationOptions (:model ,codellama-lsp-model ,@codellama-lsp-options)))

(add-to-list 'eglot-server-programs (cons codellama-lsp-modes #'codellama-lsp-contact))

(provide 'codellama-lsp)
;;; codellama-lsp.el ends here
