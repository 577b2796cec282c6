;;; emacs_completion.el --- driven by test_emacs.py  -*- lexical-binding: t; -*-

;; `emacs --batch -l emacs_completion.el' (no -Q: Debian's elpa-eglot loads as a user's would).
;; Loads the shipped editors/emacs/codellama-lsp.el, points it at the test's server and model,
;; opens a Python file, waits for eglot and the model, collects the candidates of eglot's
;; `completion-at-point' at the end of the marked line, runs the `completion-at-point' command
;; there (which accepts a sole candidate), shuts eglot down and writes what happened as JSON.

(require 'json)
(require 'subr-x)

(defvar codellama-test-result nil "An alist, written as JSON at the end.")

(defun codellama-test-put (key value)
  (setq codellama-test-result (cons (cons key value) codellama-test-result)))

(defun codellama-test-wait (seconds what condition)
  (let ((deadline (+ (float-time) seconds)))
    (while (not (funcall condition))
      (when (> (float-time) deadline) (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.05))))

(defun codellama-test-main ()
  (load (expand-file-name "editors/emacs/codellama-lsp.el" (getenv "CODELLAMA_REPO")) nil t)
  (setq codellama-lsp-command (getenv "CODELLAMA_LSP_CMD")
        codellama-lsp-model (getenv "CODELLAMA_MODEL")
        codellama-lsp-options '(:maxNewTokens 24))
  (codellama-test-put 'eglot (locate-library "eglot"))
  (find-file (getenv "CODELLAMA_FILE"))
  (python-mode)
  (codellama-test-put 'mode (symbol-name major-mode))
  (eglot-ensure)
  (run-hooks 'post-command-hook)        ; eglot-ensure connects after the next command
  (codellama-test-wait 60 "eglot to connect"
                       (lambda () (and (eglot-current-server) eglot--managed-mode)))
  (let* ((server (eglot-current-server))
         (process (jsonrpc--process server))
         model)
    (codellama-test-put 'server (plist-get (eglot--server-info server) :name))
    (codellama-test-wait 120 "the model to load"
                         (lambda ()
                           (setq model (plist-get (jsonrpc-request server :codellama/stats
                                                                   (make-hash-table))
                                                  :model))))
    (codellama-test-put 'model model)
    (goto-char (point-min))
    (forward-line (string-to-number (getenv "CODELLAMA_LINE")))
    (end-of-line)
    (codellama-test-put 'before (buffer-substring-no-properties (point-min) (point-max)))
    (let* ((capf (eglot-completion-at-point))
           (beg (nth 0 capf))
           (end (nth 1 capf))
           (table (nth 2 capf))
           (probe (buffer-substring-no-properties beg end))
           (candidates (all-completions probe table)))
      (codellama-test-put 'probe probe)
      (codellama-test-put 'candidates (vconcat (mapcar #'substring-no-properties candidates)))
      (when candidates
        (let* ((candidate (car candidates))
               (item (get-text-property 0 'eglot--lsp-item candidate)))
          (codellama-test-put 'textEdit (plist-get item :textEdit))
          ;; The command itself: a sole candidate is put in at once, then eglot's exit
          ;; function replaces it with the item's whole edit.
          (completion-at-point)
          (codellama-test-put 'point (list (1- (line-number-at-pos))
                                           (- (point) (line-beginning-position))))
          (codellama-test-put 'after (buffer-substring-no-properties (point-min) (point-max))))))
    ;; An unanswered `shutdown' signals an error here.  Emacs 28's jsonrpc then deletes the
    ;; process right after sending `exit', without waiting for it to end on its own.
    (eglot-shutdown server nil 10 t)
    (codellama-test-put 'shutdown "answered")
    (codellama-test-wait 15 "the server to exit" (lambda () (not (process-live-p process))))
    (codellama-test-put 'exit (process-exit-status process))
    (let ((stderr (jsonrpc-stderr-buffer server)))
      (when (buffer-live-p stderr)
        (codellama-test-put 'stderr (with-current-buffer stderr
                                      (buffer-substring-no-properties (point-min) (point-max))))))))

(condition-case err
    (codellama-test-main)
  (error (codellama-test-put 'error (error-message-string err))))
(let ((coding-system-for-write 'utf-8))
  (with-temp-file (getenv "CODELLAMA_RESULT")
    (insert (json-encode codellama-test-result))))
(kill-emacs 0)
;;; emacs_completion.el ends here
