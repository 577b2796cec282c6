-- Code Llama completion for Neovim 0.11+: paste into init.lua (or `:source` this file).
vim.lsp.config('codellama', {
  cmd = { 'codellama-lsp' },
  filetypes = { 'python', 'lua', 'c', 'cpp', 'rust', 'go', 'java', 'javascript', 'typescript', 'sh' },
  root_markers = { '.git' },
  init_options = { model = 'codellama/CodeLlama-7b-hf' }, -- a hub id, a local folder, or 'tiny'
  on_init = function(client) -- 0.12 splits ghost text at \n only: give it \n for a CRLF file's \r\n
    local request = client.request
    client.request = function(self, method, params, handler, ...)
      if method == 'textDocument/inlineCompletion' and handler then
        local show = handler
        handler = function(err, result, ...)
          for _, item in ipairs(result and result.items or {}) do
            item.insertText = (item.insertText:gsub('\r\n?', '\n'))
          end
          return show(err, result, ...)
        end
      end
      return request(self, method, params, handler, ...)
    end
  end,
  on_attach = function(client, bufnr)
    if vim.lsp.inline_completion then -- 0.12: ghost text as you type, <Tab> accepts it
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
      if vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode() == 'i' then
        vim.api.nvim_exec_autocmds('CursorMovedI', { buffer = bufnr }) -- ask now, not on a move
      end
      return vim.keymap.set('i', '<Tab>', function()
        if not vim.lsp.inline_completion.get() then return '<Tab>' end
      end, { buffer = bufnr, expr = true, desc = 'Accept the Code Llama completion' })
    end -- 0.11: a popup after . ( [ { , = : or on <C-x><C-o>; <C-y> accepts its item
    vim.bo[bufnr].completeopt = 'menuone,noinsert,popup'
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = true })
    vim.api.nvim_create_autocmd('CompleteDone', { buffer = bufnr, callback = function()
      local item = vim.tbl_get(vim.v.completed_item, 'user_data', 'nvim', 'lsp', 'completion_item')
      if vim.v.event.reason ~= 'accept' or not item or item.detail ~= 'Code Llama' then return end
      -- 0.11 inserts the first word only: put in the whole edit (utf-8, as Neovim negotiates)
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      local start, lines = item.textEdit.range.start, vim.split(item.textEdit.newText, '\r?\n')
      vim.api.nvim_buf_set_text(bufnr, start.line, start.character, row - 1, col, lines)
      local last = (#lines == 1 and start.character or 0) + #lines[#lines]
      vim.api.nvim_win_set_cursor(0, { start.line + #lines, last })
    end })
  end,
})
vim.lsp.enable('codellama')
